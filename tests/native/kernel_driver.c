/*
 * Runs one tpc kernel library without Python or the TVM runtime (e.g. under qemu-aarch64).
 *
 *   kernel_driver KERNEL.so BITS IN:SHAPE [IN:SHAPE ...] OUT:SHAPE
 *
 * Each tensor is a raw little-endian float file and its shape, "x1.bin:7x1152". The inputs
 * are read, the kernel's packed entry point is called with DLTensor arguments, and the last
 * tensor is written. The driver supplies what the library needs from the runtime: error
 * reporting, a (serial) parallel launcher and workspace allocation.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlpack/dlpack.h>
#include <tvm/ffi/c_api.h>

#define MAX_TENSORS 12
#define MAX_DIMS 6

typedef struct {
  void* sync_handle;
  int32_t num_task;
} ParallelGroupEnv;
typedef int (*ParallelLambda)(int task_id, ParallelGroupEnv* penv, void* cdata);

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts) {
  fprintf(stderr, "kernel error %s:", kind);
  for (int32_t i = 0; i < num_parts; ++i) fprintf(stderr, " %s", parts[i]);
  fprintf(stderr, "\n");
}

static int parallel_launch(ParallelLambda lambda, void* cdata, int num_task) {
  ParallelGroupEnv env = {NULL, num_task > 0 ? num_task : 1};
  for (int task = 0; task < env.num_task; ++task) {
    int status = lambda(task, &env, cdata);
    if (status != 0) return status;
  }
  return 0;
}

static void* alloc_workspace(int device_type, int device_id, uint64_t nbytes, int code, int bits) {
  (void)device_type; (void)device_id; (void)code; (void)bits;
  return aligned_alloc(64, (nbytes + 63) / 64 * 64);
}

static int free_workspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  free(ptr);
  return 0;
}

static int set_pointer(void* library, const char* name, void* value) {
  void** slot = (void**)dlsym(library, name);
  if (slot == NULL) return 0; /* the library does not use this service */
  *slot = value;
  return 0;
}

typedef struct {
  const char* path;
  int64_t shape[MAX_DIMS];
  int ndim;
  int is_output;
  void* data;
  size_t bytes;
} TensorArg;

static int parse_tensor(const char* text, int bits, TensorArg* tensor) {
  tensor->is_output = text[0] == '>';
  if (tensor->is_output) ++text;
  const char* colon = strrchr(text, ':');
  if (colon == NULL) return -1;
  size_t length = (size_t)(colon - text);
  char* path = malloc(length + 1);
  memcpy(path, text, length);
  path[length] = '\0';
  tensor->path = path;
  tensor->ndim = 0;
  const char* cursor = colon + 1;
  while (*cursor && tensor->ndim < MAX_DIMS) {
    char* end;
    tensor->shape[tensor->ndim++] = strtoll(cursor, &end, 10);
    cursor = (*end == 'x') ? end + 1 : end;
    if (end == cursor && *end) return -1;
  }
  size_t count = 1;
  for (int i = 0; i < tensor->ndim; ++i) count *= (size_t)tensor->shape[i];
  tensor->bytes = count * (size_t)(bits / 8);
  tensor->data = aligned_alloc(64, (tensor->bytes + 63) / 64 * 64 + 64);
  return tensor->data == NULL ? -1 : 0;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s KERNEL.so BITS PATH:SHAPE ... (the output's PATH prefixed with '>')\n", argv[0]);
    return 2;
  }
  int bits = atoi(argv[2]);
  int count = argc - 3;
  if ((bits != 32 && bits != 64) || count > MAX_TENSORS) {
    fprintf(stderr, "BITS must be 32 or 64 and at most %d tensors\n", MAX_TENSORS);
    return 2;
  }
  void* library = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (library == NULL) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  set_pointer(library, "__TVMBackendParallelLaunch", (void*)parallel_launch);
  set_pointer(library, "__TVMBackendAllocWorkspace", (void*)alloc_workspace);
  set_pointer(library, "__TVMBackendFreeWorkspace", (void*)free_workspace);
  TVMFFISafeCallType entry = (TVMFFISafeCallType)dlsym(library, "__tvm_ffi_main");
  if (entry == NULL) {
    fprintf(stderr, "%s has no __tvm_ffi_main\n", argv[1]);
    return 1;
  }

  TensorArg tensors[MAX_TENSORS];
  DLTensor dl[MAX_TENSORS];
  TVMFFIAny args[MAX_TENSORS];
  for (int i = 0; i < count; ++i) {
    if (parse_tensor(argv[3 + i], bits, &tensors[i]) != 0) {
      fprintf(stderr, "bad tensor argument %s\n", argv[3 + i]);
      return 2;
    }
    if (!tensors[i].is_output) {
      FILE* file = fopen(tensors[i].path, "rb");
      if (file == NULL || fread(tensors[i].data, 1, tensors[i].bytes, file) != tensors[i].bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", tensors[i].bytes, tensors[i].path);
        return 1;
      }
      fclose(file);
    }
    memset(&dl[i], 0, sizeof(DLTensor));
    dl[i].data = tensors[i].data;
    dl[i].device.device_type = kDLCPU;
    dl[i].ndim = tensors[i].ndim;
    dl[i].dtype.code = kDLFloat;
    dl[i].dtype.bits = (uint8_t)bits;
    dl[i].dtype.lanes = 1;
    dl[i].shape = tensors[i].shape;
    memset(&args[i], 0, sizeof(TVMFFIAny));
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = &dl[i];
  }
  TVMFFIAny result;
  memset(&result, 0, sizeof(result));
  int status = entry(NULL, args, count, &result);
  if (status != 0) {
    fprintf(stderr, "kernel returned %d\n", status);
    return 1;
  }
  for (int i = 0; i < count; ++i) {
    if (!tensors[i].is_output) continue;
    FILE* file = fopen(tensors[i].path, "wb");
    if (file == NULL || fwrite(tensors[i].data, 1, tensors[i].bytes, file) != tensors[i].bytes) {
      fprintf(stderr, "cannot write %s\n", tensors[i].path);
      return 1;
    }
    fclose(file);
  }
  return 0;
}
