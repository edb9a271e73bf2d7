// Precompiled header: the heavy LibTorch and standard headers every translation unit uses.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>
