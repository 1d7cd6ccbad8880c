"""HTTP routes, one module per resource: parse, call a domain function, return its view.

Routes hold no queries and no rules: those live in the domain modules of
:mod:`flowbureau.service`; errors become problem details in :mod:`flowbureau.service.problems`.
"""
