"""Built-in recipes, chosen by name: ``edgec build digits``. One YAML file per recipe."""
