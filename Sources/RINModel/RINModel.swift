// RINModel: under construction in this session.
