"""The model runtime: the embedded llama.cpp server, its model's download and assembly, its commands."""
