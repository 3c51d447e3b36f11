"""What runs produce and reports read: the results schema, time-to-accuracy and combinability data.

Nothing here imports training code, so the report can be built on a machine without torch's runs.
"""
