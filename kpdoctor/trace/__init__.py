"""`kpdoctor trace`: follow one packet through a node's real rules, offline.

Data flows one way: node facts (`node_rules`) and cluster state (`addresses`) -> the walk over
the netfilter hooks (`walk`, with one evaluator per ruleset kind: `ipt_eval`, `nft_eval`,
`ipvs_eval`) -> `TraceResult` (`model`) -> summary/explain (`summary`) -> renderers (`render`).
"""
