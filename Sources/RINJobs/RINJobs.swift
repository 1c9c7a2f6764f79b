// RINJobs: under construction in this session.
