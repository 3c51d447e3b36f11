"""A plug-in module for tests/test_techniques.py: importing it registers a technique, as an entry point would."""

from harness.techniques import register_technique
from tests.test_techniques import PluginTechnique

register_technique(PluginTechnique)
