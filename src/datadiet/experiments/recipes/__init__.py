"""The evidence behind the recipes (docs/recipes.md): every candidate recipe against random."""
