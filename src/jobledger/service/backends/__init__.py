"""Backends of the reference service, one module per family.

:mod:`.builtin` holds ``echo``, ``sleep``, ``fail`` and ``blob``. Each backend is
registered in the ``jobledger.backends`` entry point group (see ``pyproject.toml``) and
implements :class:`~jobledger.service.plugin.Backend`. Modules here may import
:mod:`jobledger.service.plugin` and :mod:`jobledger.codecs`; an SDK is imported only
inside the backend that needs it, so a service without that SDK still starts.
"""
