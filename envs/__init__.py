"""Gymnasium environments over twins and critics, registered on import."""
