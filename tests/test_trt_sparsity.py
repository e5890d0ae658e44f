"""common.trt.sparsity (lab 09): TensorRT's "(Sparsity)" build-log lines and inspector fields, parsed
from text written in the documented formats (the TensorRT Developer Guide and trtexec output quoted in
NVIDIA/TensorRT issues #2169, #4020, #4056), not from a run."""

import json

import pytest

from common.trt import BuildLog
from common.trt import sparsity as trt_sparsity


def test_documented_example_parses():
    log = trt_sparsity.parse_build_log(trt_sparsity.DOCUMENTED_EXAMPLE)
    assert log.reported and log.eligible == ("conv1", "conv2", "conv3") and log.picked == ("conv2", "conv3")
    assert log.eligible_not_picked == ("conv1",)


def test_bare_messages_from_the_recording_logger_parse():
    log = BuildLog()
    log.add("INFO", "Total Activation Memory: 7864832")
    log.add("INFO", "(Sparsity) Layers eligible for sparse math: /features/features.3/Conv + /features/features.5/Relu, "
                    "/features/features.7/Conv + /features/features.9/Relu")
    log.add("INFO", "(Sparsity) TRT inference plan picked sparse implementation for layers: "
                    "/features/features.7/Conv + /features/features.9/Relu")
    parsed = trt_sparsity.parse_build_log(text for _, text in log.records)
    assert parsed.eligible == ("/features/features.3/Conv + /features/features.5/Relu",
                               "/features/features.7/Conv + /features/features.9/Relu")
    assert parsed.eligible_not_picked == ("/features/features.3/Conv + /features/features.5/Relu",)


def test_an_empty_picked_list_and_a_log_without_sparsity_lines():
    # trtexec prints the second line with nothing after the colon when every dense kernel was faster
    text = ("[07/19/2022-11:58:20] [I] [TRT] (Sparsity) Layers eligible for sparse math: Conv_22, MatMul_51\n"
            "[07/19/2022-11:58:20] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers:\n")
    parsed = trt_sparsity.parse_build_log(text)
    assert parsed.reported and parsed.picked == () and parsed.eligible_not_picked == ("Conv_22", "MatMul_51")
    silent = trt_sparsity.parse_build_log(["[I] [TRT] Engine built in 31.2 sec."])
    assert not silent.reported and "no '(Sparsity)' messages" in silent.summary()


def test_repeated_messages_merge_without_duplicates():
    line = "(Sparsity) Layers eligible for sparse math: a, b"
    assert trt_sparsity.parse_build_log([line, "(Sparsity) Layers eligible for sparse math: b, c"]).eligible == ("a", "b", "c")


def _inspector_json(schema_key: str) -> str:
    """Two layers in the detailed --exportLayerInfo format of NVIDIA/TensorRT issue #4020 (10.x)."""
    def conv(name, tactic):
        return {"Name": name, "LayerType": "CaskConvolution",
                "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [64, 32, 8, 8],
                            "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
                "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [64, 64, 8, 8],
                             "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
                "ParameterType": "Convolution", "Kernel": [3, 3], "Weights": {"Type": "Half", "Count": 18432},
                "HasSparseWeights": 1, "HasDynamicFilter": 0, "Activation": "RELU", "TacticName": tactic,
                "StreamId": 0, "Metadata": f"[ONNX Layer: {name}]"}
    layers = [conv("conv2 + relu2", "sm80_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize64x64x64"),
              conv("conv3 + relu3", "sm80_xmma_fprop_sparse_conv_f16f16_f16f32_f32_nhwckrsc_nhwc_sptensor16x8x32"),
              {"Name": "reshape", "LayerType": "NoOp", "TacticValue": "0x0000000000000000", "StreamId": 0}]
    io = ["input", "output"] if schema_key == "Bindings" else [{"Name": "input", "IOMode": "kINPUT"}]
    return json.dumps({"Layers": layers, schema_key: io})


@pytest.mark.parametrize("schema_key", ["Bindings", "I/O Tensors"])
def test_inspector_tells_sparse_weights_from_sparse_kernels(schema_key):
    layers = trt_sparsity.layer_sparsity_from_json(_inspector_json(schema_key))
    assert [layer.name for layer in layers] == ["conv2 + relu2", "conv3 + relu3"]
    assert all(layer.has_sparse_weights for layer in layers)
    assert [layer.sparse_kernel for layer in layers] == [False, True]


def test_a_sparse_kernel_without_the_flag_is_still_listed():
    doc = {"Layers": [{"Name": "fc", "LayerType": "gemm", "TacticName": "sm90_xmma_gemm_f16f16_sptensor_nn"}],
           "I/O Tensors": []}
    (layer,) = trt_sparsity.layer_sparsity_from_json(doc)
    assert layer.has_sparse_weights is None and layer.sparse_kernel
