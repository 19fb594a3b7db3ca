"""Methods that choose condensed images from real data: SELECTORS maps a name to
`select(ctx, c, pool, ipc, gen) -> uint8 images` for one class (ctx: dcond.selection.context.SelectContext).
A new method is one module here plus its name below."""

from dcond.registry import Registry

SELECTORS: Registry = Registry("selection method", {name: f"dcond.selection.{name}"
                                                     for name in ("herding", "random", "rded", "score")})
# method -> {recipe: settings its authors' code uses for data of that shape} (see dcond.recipes); a method
# registers its recipes when its module is imported, which looking it up in SELECTORS does
SELECTION_RECIPES: Registry[dict] = Registry("selection recipe")
