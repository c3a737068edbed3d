"""Import of chat exports: one parser module per app, everything else shared.

A parser (``whatsapp``, ``telegram``, ``signal``, ``instagram``, ``messenger``) turns an
export into a stream of :class:`~chatsessions.imports.model.ImportedMessage`;
``service`` maps authors to a contact, applies the time zone and date order, derives
idempotent ``externalId``s and stores the messages in batches through the one write path.
"""
