// Translation unit of the GLU kernels. The host names the instantiations it needs
// (solbench::glu_kernel<dtype, act, interleaved, has_limit, vec, pdl>) as NVRTC name expressions.
#include "glu.cuh"
