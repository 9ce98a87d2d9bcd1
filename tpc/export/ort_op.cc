// An onnxruntime custom-op library that runs one compiled tpc tensor product as the
// ai.tpc::TensorProduct operator.
//
// The kernel's object code is linked into this library: its entry point __tvm_ffi_main
// follows tvm-ffi's C calling convention (DLTensor arguments x1, x2, [weight], out, then the
// constant tables). This file supplies the few runtime services that code calls (error
// reporting, parallel launch on onnxruntime's intra-op thread pool, workspace memory), so
// the library needs no TVM library at run time. kernel_config.h, written next to this file
// by tpc.export.ort_library, describes the kernel: its fingerprint, dtype, sizes and tables.

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <sched.h>
#include <string>
#include <vector>

#include <dlpack/dlpack.h>
#include <tvm/ffi/c_api.h>

#include "kernel_config.h"
#include "onnxruntime_c_api.h"

namespace {

const char kDomain[] = "ai.tpc";
const char kOpName[] = "TensorProduct";
const size_t kFixedInputs = TPC_WEIGHT_NUMEL > 0 ? 3 : 2;

const OrtApi* g_api = nullptr;

// The message of the last kernel error raised on this thread, and the onnxruntime context
// of the Compute call running on it (parallel loops launch their tasks through it).
thread_local std::string t_error;
thread_local const OrtKernelContext* t_context = nullptr;

// -- runtime services the compiled kernel calls --------------------------------------------

struct ParallelGroupEnv {
  void* sync_handle;
  int32_t num_task;
};
typedef int (*ParallelLambda)(int task_id, ParallelGroupEnv* env, void* closure);

struct Launch {
  ParallelLambda lambda;
  void* closure;
  ParallelGroupEnv env;
  std::mutex mutex;
  bool failed = false;
  std::string error;
};

void RunTask(void* data, size_t task) {
  Launch* launch = static_cast<Launch*>(data);
  if (launch->lambda(static_cast<int>(task), &launch->env, launch->closure) != 0) {
    std::lock_guard<std::mutex> lock(launch->mutex);
    if (!launch->failed) launch->error = t_error;
    launch->failed = true;
  }
}

int DefaultTaskCount() {
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) return CPU_COUNT(&cpus);
  return 1;
}

int ParallelLaunch(ParallelLambda lambda, void* closure, int num_task) {
  Launch launch;
  launch.lambda = lambda;
  launch.closure = closure;
  launch.env = {nullptr, num_task > 0 ? num_task : DefaultTaskCount()};
  size_t tasks = static_cast<size_t>(launch.env.num_task);
  OrtStatus* status = nullptr;
  if (tasks > 1) {
    status = g_api->KernelContext_ParallelFor(t_context, RunTask, tasks, 0, &launch);
  } else {
    for (size_t task = 0; task < tasks; ++task) RunTask(&launch, task);
  }
  if (status != nullptr) {
    t_error = std::string("parallel launch failed: ") + g_api->GetErrorMessage(status);
    g_api->ReleaseStatus(status);
    return -1;
  }
  if (launch.failed) {
    t_error = launch.error;
    return -1;
  }
  return 0;
}

void* AllocWorkspace(int, int, uint64_t nbytes, int, int) {
  size_t size = static_cast<size_t>((nbytes + 63) / 64 * 64);
  return std::aligned_alloc(64, size > 0 ? size : 64);
}

int FreeWorkspace(int, int, void* pointer) {
  std::free(pointer);
  return 0;
}

}  // namespace

extern "C" {

// The compiled kernel calls its runtime services through these pointers (weak, empty
// definitions in its object code; these definitions take their place).
void* __TVMBackendParallelLaunch = reinterpret_cast<void*>(&ParallelLaunch);
void* __TVMBackendAllocWorkspace = reinterpret_cast<void*>(&AllocWorkspace);
void* __TVMBackendFreeWorkspace = reinterpret_cast<void*>(&FreeWorkspace);

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts) {
  t_error = kind;
  t_error += ":";
  for (int32_t i = 0; i < num_parts; ++i) {
    t_error += " ";
    t_error += parts[i];
  }
}

int __tvm_ffi_main(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result);

}  // extern "C"

namespace {

// -- the operator ----------------------------------------------------------------------------

struct Kernel {
  std::string node;
};

OrtStatus* Error(OrtErrorCode code, const std::string& node, const std::string& message) {
  std::string text = std::string(kDomain) + "::" + kOpName;
  if (!node.empty()) text += " node '" + node + "'";
  return g_api->CreateStatus(code, (text + ": " + message).c_str());
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// The string attribute `name` of the node, or an error status.
OrtStatus* StringAttribute(const OrtKernelInfo* info, const char* name, const std::string& node, std::string* out) {
  size_t size = 0;
  OrtStatus* status = g_api->KernelInfoGetAttribute_string(info, name, nullptr, &size);
  if (status == nullptr) {
    std::vector<char> buffer(size + 1, '\0');
    status = g_api->KernelInfoGetAttribute_string(info, name, buffer.data(), &size);
    if (status == nullptr) {
      *out = buffer.data();
      return nullptr;
    }
  }
  g_api->ReleaseStatus(status);
  return Error(ORT_INVALID_GRAPH, node, std::string("the node has no string attribute '") + name + "'");
}

OrtStatus* ORT_API_CALL CreateKernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info, void** out) {
  std::string node;
  size_t size = 0;
  OrtStatus* status = g_api->KernelInfo_GetNodeName(info, nullptr, &size);
  if (status == nullptr && size > 0) {
    std::vector<char> buffer(size + 1, '\0');
    status = g_api->KernelInfo_GetNodeName(info, buffer.data(), &size);
    if (status == nullptr) node = buffer.data();
  }
  if (status != nullptr) g_api->ReleaseStatus(status);
  std::string fingerprint, dtype;
  if ((status = StringAttribute(info, "fingerprint", node, &fingerprint)) != nullptr) return status;
  if ((status = StringAttribute(info, "dtype", node, &dtype)) != nullptr) return status;
  if (fingerprint != TPC_FINGERPRINT) {
    return Error(ORT_INVALID_GRAPH, node,
                 "this library was built for the tensor product with fingerprint " TPC_FINGERPRINT
                 ", the node computes the one with fingerprint " + fingerprint +
                 "; build a library from the node's spec (tpc.export.build_ort_library)");
  }
  if (dtype != TPC_DTYPE) {
    return Error(ORT_INVALID_GRAPH, node,
                 "this library was built for dtype " TPC_DTYPE ", the node has dtype " + dtype +
                 " (tensor product " TPC_FINGERPRINT ")");
  }
  size_t inputs = 0;
  if ((status = g_api->KernelInfo_GetInputCount(info, &inputs)) != nullptr) return status;
  if (inputs < kFixedInputs) {
    return Error(ORT_INVALID_GRAPH, node, "the node has no weight input; this tensor product has " +
                                              std::to_string(TPC_WEIGHT_NUMEL) + " weights");
  }
  *out = new Kernel{node};
  return nullptr;
}

// Checks one input's dtype and shape; fills `tensor` to pass it to the compiled kernel.
OrtStatus* CheckInput(OrtKernelContext* context, size_t index, const char* name, const std::vector<int64_t>& expected,
                      const std::string& node, DLTensor* tensor, int64_t* shape) {
  const OrtValue* value = nullptr;
  OrtStatus* status = g_api->KernelContext_GetInput(context, index, &value);
  if (status != nullptr) return status;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if ((status = g_api->GetTensorTypeAndShape(value, &info)) != nullptr) return status;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t ndim = 0;
  std::vector<int64_t> dims;
  status = g_api->GetTensorElementType(info, &type);
  if (status == nullptr) status = g_api->GetDimensionsCount(info, &ndim);
  if (status == nullptr) {
    dims.resize(ndim);
    status = g_api->GetDimensions(info, dims.data(), ndim);
  }
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  if (status != nullptr) return status;
  if (type != TPC_ELEMENT_TYPE) {
    return Error(ORT_INVALID_ARGUMENT, node, std::string(name) + " must be a " TPC_DTYPE " tensor");
  }
  if (dims != expected) {
    return Error(ORT_INVALID_ARGUMENT, node, std::string(name) + " must have shape " + ShapeText(expected) +
                                                 ", got " + ShapeText(dims));
  }
  void* data = nullptr;
  if ((status = g_api->GetTensorMutableData(const_cast<OrtValue*>(value), &data)) != nullptr) return status;
  for (size_t i = 0; i < ndim; ++i) shape[i] = dims[i];
  *tensor = DLTensor{data, {kDLCPU, 0}, static_cast<int32_t>(ndim), {kDLFloat, TPC_DTYPE_BITS, 1}, shape, nullptr, 0};
  return nullptr;
}

OrtStatus* ORT_API_CALL Compute(void* op_kernel, OrtKernelContext* context) {
  const std::string& node = static_cast<Kernel*>(op_kernel)->node;
  DLTensor tensors[4 + TPC_NUM_TABLES];
  int64_t shapes[4][2];
  const OrtValue* first = nullptr;
  OrtStatus* status = g_api->KernelContext_GetInput(context, 0, &first);
  if (status != nullptr) return status;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if ((status = g_api->GetTensorTypeAndShape(first, &info)) != nullptr) return status;
  size_t ndim = 0;
  int64_t dims[2] = {0, 0};
  status = g_api->GetDimensionsCount(info, &ndim);
  if (status == nullptr && ndim == 2) status = g_api->GetDimensions(info, dims, 2);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  if (status != nullptr) return status;
  if (ndim != 2) {
    return Error(ORT_INVALID_ARGUMENT, node, "x1 must have shape (batch, " + std::to_string(TPC_DIM1) + "), got " +
                                                 std::to_string(ndim) + " dimensions");
  }
  int64_t batch = dims[0];
  const char* names[3] = {"x1", "x2", "weight"};
  std::vector<int64_t> expected[3] = {{batch, TPC_DIM1}, {batch, TPC_DIM2}, {batch, TPC_WEIGHT_NUMEL}};
  if (TPC_SHARED_WEIGHTS) expected[2] = {TPC_WEIGHT_NUMEL};
  for (size_t i = 0; i < kFixedInputs; ++i) {
    status = CheckInput(context, i, names[i], expected[i], node, &tensors[i], shapes[i]);
    if (status != nullptr) return status;
  }
  int64_t out_dims[2] = {batch, TPC_DIM_OUT};
  OrtValue* output = nullptr;
  if ((status = g_api->KernelContext_GetOutput(context, 0, out_dims, 2, &output)) != nullptr) return status;
  void* out_data = nullptr;
  if ((status = g_api->GetTensorMutableData(output, &out_data)) != nullptr) return status;
  if (batch == 0) return nullptr;
  shapes[3][0] = batch;
  shapes[3][1] = TPC_DIM_OUT;
  tensors[kFixedInputs] = DLTensor{out_data, {kDLCPU, 0}, 2, {kDLFloat, TPC_DTYPE_BITS, 1}, shapes[3], nullptr, 0};
  size_t count = kFixedInputs + 1;
#if TPC_NUM_TABLES > 0
  for (int i = 0; i < TPC_NUM_TABLES; ++i) {
    void* data = const_cast<uint64_t*>(kTableData) + kTableOffsets[i];
    tensors[count++] = DLTensor{data, {kDLCPU, 0}, kTableNdim[i], {kDLFloat, TPC_DTYPE_BITS, 1},
                                const_cast<int64_t*>(kTableShapes[i]), nullptr, 0};
  }
#endif
  TVMFFIAny args[4 + TPC_NUM_TABLES] = {};
  for (size_t i = 0; i < count; ++i) {
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = &tensors[i];
  }
  TVMFFIAny result = {};
  t_context = context;
  int code = __tvm_ffi_main(nullptr, args, static_cast<int32_t>(count), &result);
  t_context = nullptr;
  if (code != 0) return Error(ORT_RUNTIME_EXCEPTION, node, "the compiled kernel failed: " + t_error);
  return nullptr;
}

// Graph-time inference: y is (batch, dim_out) of the library's dtype. onnxruntime ignores the
// status returned here, so inputs of another dtype leave y as the model declares it and are
// refused in CreateKernel, whose errors reach the user.
OrtStatus* ORT_API_CALL InferOutputShape(const OrtCustomOp*, OrtShapeInferContext* context) {
  OrtTensorTypeAndShapeInfo* x1 = nullptr;  // owned by the context
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t ndim = 0;
  int64_t x1_dims[2] = {-1, -1};
  const char* x1_names[2] = {"", ""};
  OrtStatus* status = g_api->ShapeInferContext_GetInputTypeShape(context, 0, &x1);
  if (status == nullptr) status = g_api->GetTensorElementType(x1, &type);
  if (status == nullptr) status = g_api->GetDimensionsCount(x1, &ndim);
  if (status == nullptr && ndim == 2) status = g_api->GetDimensions(x1, x1_dims, 2);
  if (status == nullptr && ndim == 2) status = g_api->GetSymbolicDimensions(x1, x1_names, 2);
  if (status != nullptr || type != TPC_ELEMENT_TYPE) return status;
  // The batch of y is x1's: its size, or its symbolic name (an unnamed unknown size gets one).
  int64_t dims[2] = {x1_dims[0], TPC_DIM_OUT};
  const char* names[2] = {x1_names[0][0] != '\0' || x1_dims[0] >= 0 ? x1_names[0] : "batch", ""};
  OrtTensorTypeAndShapeInfo* y = nullptr;
  if ((status = g_api->CreateTensorTypeAndShapeInfo(&y)) != nullptr) return status;
  status = g_api->SetTensorElementType(y, TPC_ELEMENT_TYPE);
  if (status == nullptr) status = g_api->SetDimensions(y, dims, 2);
  if (status == nullptr) status = g_api->SetSymbolicDimensions(y, names, 2);
  if (status == nullptr) status = g_api->ShapeInferContext_SetOutputTypeShape(context, 0, y);
  g_api->ReleaseTensorTypeAndShapeInfo(y);
  return status;
}

void ORT_API_CALL DestroyKernel(void* op_kernel) { delete static_cast<Kernel*>(op_kernel); }

const char* ORT_API_CALL GetName(const OrtCustomOp*) { return kOpName; }
const char* ORT_API_CALL GetExecutionProviderType(const OrtCustomOp*) { return nullptr; }

// Every type is left open in the schema, so that a node of another dtype reaches CreateKernel,
// which names both dtypes (a typed schema would refuse it earlier, calling x1's type invalid).
ONNXTensorElementDataType ORT_API_CALL GetInputType(const OrtCustomOp*, size_t) {
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}
size_t ORT_API_CALL GetInputTypeCount(const OrtCustomOp*) { return 3; }
ONNXTensorElementDataType ORT_API_CALL GetOutputType(const OrtCustomOp*, size_t) {
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}
size_t ORT_API_CALL GetOutputTypeCount(const OrtCustomOp*) { return 1; }

// x1 and x2, then a variadic input of any types, possibly empty: the weight when the product
// has weights, then the fallback function's coefficient tensors, which the kernel does not
// read. The schema is the same for every library, so that a node of another tensor product
// reaches CreateKernel and is refused there with both fingerprints.
OrtCustomOpInputOutputCharacteristic ORT_API_CALL GetInputCharacteristic(const OrtCustomOp*, size_t index) {
  return index < 2 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_VARIADIC;
}
OrtCustomOpInputOutputCharacteristic ORT_API_CALL GetOutputCharacteristic(const OrtCustomOp*, size_t) {
  return INPUT_OUTPUT_REQUIRED;
}
OrtMemType ORT_API_CALL GetInputMemoryType(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int ORT_API_CALL GetVariadicInputMinArity(const OrtCustomOp*) { return 0; }
int ORT_API_CALL GetVariadicInputHomogeneity(const OrtCustomOp*) { return 0; }

OrtCustomOp MakeOp() {
  OrtCustomOp op = {};
  op.version = ORT_API_VERSION;
  op.GetName = GetName;
  op.GetExecutionProviderType = GetExecutionProviderType;
  op.GetInputType = GetInputType;
  op.GetInputTypeCount = GetInputTypeCount;
  op.GetOutputType = GetOutputType;
  op.GetOutputTypeCount = GetOutputTypeCount;
  op.KernelDestroy = DestroyKernel;
  op.GetInputCharacteristic = GetInputCharacteristic;
  op.GetOutputCharacteristic = GetOutputCharacteristic;
  op.GetInputMemoryType = GetInputMemoryType;
  op.GetVariadicInputMinArity = GetVariadicInputMinArity;
  op.GetVariadicInputHomogeneity = GetVariadicInputHomogeneity;
  op.CreateKernelV2 = CreateKernel;
  op.KernelComputeV2 = Compute;
  op.InferOutputShapeFn = InferOutputShape;
  return op;
}

const OrtCustomOp g_op = MakeOp();

// Domains must outlive the sessions that use them: they are released when the library is unloaded.
struct Domains {
  std::mutex mutex;
  std::vector<OrtCustomOpDomain*> domains;
  ~Domains() {
    for (OrtCustomOpDomain* domain : domains) g_api->ReleaseCustomOpDomain(domain);
  }
};
Domains g_domains;

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                           const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    const OrtApi* oldest = api_base->GetApi(1);
    std::string message = std::string("the tpc TensorProduct library needs onnxruntime with API version ") +
                          std::to_string(ORT_API_VERSION) + " or later; this is onnxruntime " +
                          api_base->GetVersionString();
    return oldest == nullptr ? nullptr : oldest->CreateStatus(ORT_FAIL, message.c_str());
  }
  g_api = api;
  OrtCustomOpDomain* domain = nullptr;
  OrtStatus* status = api->CreateCustomOpDomain(kDomain, &domain);
  if (status != nullptr) return status;
  {
    std::lock_guard<std::mutex> lock(g_domains.mutex);
    g_domains.domains.push_back(domain);
  }
  if ((status = api->CustomOpDomain_Add(domain, &g_op)) != nullptr) return status;
  return api->AddCustomOpDomain(options, domain);
}
