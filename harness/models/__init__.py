"""Models that arrive as something other than a safetensors folder (a GGUF file, a PyPI package holding one),
turned once into a cached folder that every other part of harness reads."""
