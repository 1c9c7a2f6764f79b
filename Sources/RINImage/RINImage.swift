// RINImage: under construction in this session.
