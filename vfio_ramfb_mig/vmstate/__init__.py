"""The VMStateDescription model, its readers (vmdesc JSON, -dump-vmstate) and its construct compiler."""
