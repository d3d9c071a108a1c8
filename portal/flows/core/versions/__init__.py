"""The structures of the convention, one module per version (`v001_0` is "001,0")."""
