"""The config: its types and loader, the planner, the rule in words, the feeds."""
