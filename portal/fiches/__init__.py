"""Fiches de liaison as structured forms: a catalogue of forms described as data, their pure
validator, the encrypted fiches themselves, their decision and their forwarding."""
