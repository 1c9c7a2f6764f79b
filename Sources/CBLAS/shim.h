// Only what the tensor layer needs from OpenBLAS: the CBLAS interface and the thread controls.
#include <cblas.h>
