"""Files Cardinal ships (icon, self-test sample), installed as the package `cardinal.assets`."""
