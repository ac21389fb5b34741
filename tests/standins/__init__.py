"""Local stand-ins for the outside services publishing talks to (TGOS's CSW, data.gov.tw)."""
