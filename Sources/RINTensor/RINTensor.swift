// RINTensor: under construction in this session.
