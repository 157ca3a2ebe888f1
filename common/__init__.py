"""The ground floor: what every layer may import (the error type, atomic file writes, seeded generators)."""
