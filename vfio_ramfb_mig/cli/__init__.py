"""click commands: parse options, call one function, hand the result to render."""
