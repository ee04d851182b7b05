"""XMPP: streams, client and component sessions, routing, and the events plugins hook.

Plugins hook these with ``module.hook(name, handler, priority=0)`` (higher priority runs
first). Names follow Prosody's, so its modules read as a porting guide.

Stanza events get a ``StanzaEvent`` (``unirtc.xmpp.events``): ``.stanza`` (a
``domish.Element`` in ``jabber:client``), ``.origin`` (the local session that sent it: a
client, ``kind == "c2s"``, or a component; None when the server made it), ``.to`` and
``.sender`` (prepared JIDs; ``to`` is the sender's bare JID when the stanza had none),
``.router``, ``.send(element)`` and, for IQs, ``.result(payload=None)``.

A handler returns None ("not mine": the next handler, then the default, runs), True
(handled), a stanza (routed for it, e.g. an IQ result), or a Deferred/coroutine giving one of
those; it may raise ``unirtc.xmpp.stanzas.StanzaError(condition)`` to bounce the stanza.
Any other exception is logged and bounces it as ``internal-server-error``.

Where a local client's stanza leaves (before routing; consume it or let it go on):
  ``pre-message/bare|full|host``, ``pre-presence/...``, ``pre-iq/...``
      e.g. carbons copies, privacy lists, outbound subscription handling.
  ``presence/broadcast``  (``PresenceEvent``: ``.initial`` is True for a session's first
      available presence) a client's presence without ``to``, after the core recorded the
      session's availability, priority and presence; also fired with a generated
      ``unavailable`` when an available session ends. The presence plugin sends it to the
      roster and answers with True; unhandled, it goes to the user's own available resources.
  ``stanza/<xmlns>:<name>``  a top-level element that is not a stanza (e.g. stream
      management); unhandled, the client gets ``unsupported-stanza-type``.

Where a stanza arrives for this server's domain (from a client, a component, later s2s):
  ``iq-get/host/<xmlns>:<name>``, ``iq-set/host/...``, ``iq-get/bare/...``, ``iq-set/bare/...``
      an IQ to the server or to an account's bare JID, by its payload (disco, ping, roster,
      vcard...). Unhandled get/set IQs are answered ``service-unavailable``.
  ``message/host|bare|full``, ``presence/host|bare|full``, ``iq/host|bare|full``
      any stanza, after the specific IQ events. Unhandled, RFC 6121 §8.5 applies: a message
      to a bare JID goes to the available resources of highest non-negative priority,
      presence to every available resource, a full JID to that resource.
  ``message/offline``  a normal or chat message to an existing account with no resource
      that can take it (the offline plugin stores it and returns True); unhandled, the sender
      gets ``service-unavailable``.
  ``route/remote``  a stanza for a domain that is neither served nor a component (s2s hooks
      it); unhandled, the sender gets ``remote-server-not-found``.

Session events (informational; return None) get a ``SessionEvent``: ``.session``, ``.router``.
  ``resource-bound``, ``session-started``  a client bound its full JID and is routable.
  ``session-ended``  a bound client is gone (after its unavailable broadcast).

A session (``unirtc.xmpp.router.LocalSession``) has ``.jid``, ``.kind``, ``.available``,
``.priority``, ``.presence``, ``.data`` (a dict for plugin state) and ``.deliver(element)``.
The router (``event.router``, or ``module.items("xmpp-router")[0]``) offers
``route(stanza)``, ``sessions_of(bare_jid)``, ``session(full_jid)``, ``all_sessions()``, and
``add_component(domain, obj)``/``remove_component(domain, obj)``: every stanza for ``domain``
then goes to ``obj.deliver(stanza)`` (how an in-process MUC can serve conference.<domain>).
A plugin that sends IQs from the server gets their results and errors through ``iq/host``.

Items the core reads: ``feature`` (disco features, via ``module.add_feature``),
``stream-feature`` (a ``domish.Element`` offered to clients after authentication),
``disco-item`` (a JID, or ``(jid, name)``, listed in the server's disco#items).
"""
