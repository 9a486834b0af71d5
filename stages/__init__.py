"""emotune pipeline stages: fetch -> clean -> audit -> tokenize -> train -> evaluate -> aggregate."""
