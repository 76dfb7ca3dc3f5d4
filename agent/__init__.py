"""The brain of the loop: config, campaign, planners, store, cluster, report and CLI."""
