"""`kpdoctor why svc/NS/NAME`: one Service, cause first - from its selector to what every node does with it.

Pure analysis over a loaded ClusterState and NodeStates (no I/O here except `sources`):
`target` parses what the user named, `api` finds the API-level causes, `nodes` says what each
node's real rules do with the Service's frontends, `verdict` turns both into one sentence, a fix
and an exit code, `render` prints it (console text or JSON).
"""
