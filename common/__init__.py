"""TensorRT Performance Labs: the helpers every lab imports (`from common import bench, env, ...`)."""
