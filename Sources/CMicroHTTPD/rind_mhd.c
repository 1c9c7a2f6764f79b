#include "rind_mhd.h"
