"""The conformance suite: tests every backend must pass, parametrised by the plugin.

Run it against your own backend::

    pytest -p statekeel.testing.plugin --statekeel-backends=mine --pyargs statekeel.testing.conformance
"""
