"""Small networks edgediff defines itself (written from published descriptions, loaded from plain state dicts)."""
