"""The arq side: worker settings and the slice runner."""
