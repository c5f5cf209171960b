"""The ML layer of the catalog: training, validation, scoring, canary and champion assets."""

GROUP = "ml"
OWNERS = ["team:data-science"]
