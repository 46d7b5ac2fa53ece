"""One package per operator; importing a package registers its spec and implementations."""
