"""Request and response models: `…Create` for what a client sends, `…Public` for what it gets."""
