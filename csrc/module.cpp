// The Python module `rs_kernels._C`: importing it loads this shared library, whose static
// initialisers register the ops with the dispatcher (torch.ops.rs_kernels.*). It exposes nothing
// itself. Only the setuptools build (which defines TORCH_EXTENSION_NAME) compiles this stub; the
// CMake build against libtorch has no Python.
#ifdef TORCH_EXTENSION_NAME
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // m_name
      "rs_kernels memory-bank ops, registered as torch.ops.rs_kernels.membank_*",  // m_doc
      -1,    // m_size
      nullptr,  // m_methods
  };
  return PyModule_Create(&module_def);
}
}
#endif
