# example_project/ is a user's project that test_plugin.py runs with pytester; its tests
# are not ours to collect.
collect_ignore = ["example_project"]
