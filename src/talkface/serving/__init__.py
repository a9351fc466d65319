"""The Ray Serve host: every engine stage its own deployment, sessions in the gateway.

The only package that imports Ray, and only in its submodules: ``import talkface.serving``
loads nothing heavy. :mod:`talkface.serving.settings` holds the settings (no Ray),
:mod:`~talkface.serving.deployments` the deployments that wrap the existing backends,
:mod:`~talkface.serving.app` the application builder a Serve config names,
:mod:`~talkface.serving.remote` the engines that forward to deployment handles, and
:mod:`~talkface.serving.runtime` the :class:`~talkface.runtime.Runtime` that hands them to
sessions, which do not know which host they run on.
"""
