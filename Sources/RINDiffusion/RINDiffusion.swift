// RINDiffusion: under construction in this session.
