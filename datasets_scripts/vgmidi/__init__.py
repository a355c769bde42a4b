"""VGMIDI (piano MIDI rated by crowd listeners) -> a dsaml dataset folder with rendered audio."""
