"""The client: what a user's calls go through.

:mod:`.connection` (the :class:`Connection`: registry + store + one provider),
:mod:`.job` (the :class:`Job` handle of both dialects), :mod:`.poller` (one shared status
poller per connection), :mod:`.sync` (pending submissions, remote listing, ``sync``),
:mod:`.streaming` (interim results, download progress), :mod:`.binding` (a connection's
provider and service; the shared connections of imported handles) and :mod:`.checks`
(argument checks). These modules refer to each other (a handle needs its connection, a
connection makes handles), so they live together here; they may import the registry,
the store, codecs, providers, :mod:`jobledger.names` and the foundations, and never
:mod:`jobledger.jobs` or the CLI. Submodules are imported on demand, so importing this
package costs nothing.
"""

from __future__ import annotations
