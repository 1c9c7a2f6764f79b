// RINServer: under construction in this session.
