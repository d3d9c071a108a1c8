"""XML data flows (CGPEM, PECGM, PECDH) in the portal.

`portal.flows.core` is the framework-free validation core (validator, schemas, rules, samples,
sanity checks) that runs offline; here are the portal's verbs on flow deposits (`models`,
`services`, `follow_up`, `reminders`, `calendar`, `permissions`, no request) and `views`, the
blueprint, the only module that imports Flask.
"""
