#ifndef FER_CCAIRO_SHIM_H
#define FER_CCAIRO_SHIM_H
#include <cairo.h>
#include <cairo-svg.h>
#endif
