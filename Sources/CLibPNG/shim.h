// libpng's simplified API (png_image_*) reports errors in the png_image struct instead of longjmp,
// so Swift can call it directly: no C shim is needed for PNG.
#include <png.h>
