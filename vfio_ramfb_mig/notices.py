"""What the library tells the program using it that is neither a result nor an error.

The program sets these hooks (the CLI says them on stderr); left None, nothing is said, so a
library caller hears nothing. One hook per kind of notice, called from the layer that knows.

Imports: nothing (the CLI sets the hooks at start-up, which must stay cheap).
"""

from __future__ import annotations

from collections.abc import Callable

#: an input was copied whole into temp space to be read by offset (a verb that goes back over a
#: pipe or compressed input): called with the input's name, the bytes copied and the temp-space
#: limit (VMIG_SPOOL_LIMIT) they count against
copied: Callable[[str, int, int], None] | None = None
