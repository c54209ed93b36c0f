# Finds every dependency once and prints what was found. CPU machines: Debian packages
# (libtorch-dev 1.13). GPU machines: a PyTorch 2.x install (pass its
# torch.utils.cmake_prefix_path in CMAKE_PREFIX_PATH) plus unpacked Debian packages
# (scripts/offline_deps.sh).

# glog's config file hard-codes /usr/share/glog/cmake for its modules; an unpacked
# prefix ships them under <prefix>/share/glog/cmake.
foreach(p ${CMAKE_PREFIX_PATH})
  if(EXISTS "${p}/share/glog/cmake")
    list(APPEND CMAKE_MODULE_PATH "${p}/share/glog/cmake")
  endif()
endforeach()

find_package(Torch REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(glog CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
# PCRE2 (8-bit): pkg-config where present, else a plain search (GPU images may lack
# pkg-config).
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
endif()
if(NOT TARGET PkgConfig::PCRE2)
  find_path(PCRE2_INCLUDE_DIR pcre2.h REQUIRED)
  find_library(PCRE2_LIBRARY NAMES pcre2-8 REQUIRED)
  add_library(PkgConfig::PCRE2 INTERFACE IMPORTED)
  set_target_properties(PkgConfig::PCRE2 PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${PCRE2_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${PCRE2_LIBRARY}")
  set(PCRE2_VERSION "found at ${PCRE2_LIBRARY}")
endif()
if(LLAVA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
find_package(Threads REQUIRED)
# gRPC and protobuf carry the control plane (coordinator, workers, client).
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)  # SHA-256 of checkpoints (libcrypto); gRPC needs it too

# Gloo (Debian's libgloo-dev): the CPU workers' collectives. Optional: GPU machines use
# NCCL, and a pip PyTorch carries its own Gloo internally.
set(LLAVA_HAVE_GLOO OFF)
find_package(Gloo CONFIG QUIET PATHS /usr/share/cmake/Gloo)
if(TARGET gloo)
  set(LLAVA_HAVE_GLOO ON)
endif()

# prometheus-cpp (Debian's prometheus-cpp-dev; in the offline .debs for GPU machines):
# the metric types and text format of the /metrics endpoints (served by common/net).
find_package(prometheus-cpp CONFIG REQUIRED)

# Torch's CUDA build is what decides whether this build can use a GPU.
set(LLAVA_HAVE_CUDA OFF)
if(LLAVA_USE_CUDA AND (TARGET torch_cuda OR TORCH_CUDA_LIBRARIES))
  set(LLAVA_HAVE_CUDA ON)
endif()

# NCCL: headers and library from $NCCL_ROOT, a pip nvidia-nccl package, or the CUDA
# toolkit (/usr/local/cuda). Compiled in wherever found, so the NCCL path builds and
# links on CPU machines too.
set(LLAVA_HAVE_NCCL OFF)
if(LLAVA_USE_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h
            HINTS $ENV{NCCL_ROOT}/include ${NCCL_ROOT}/include /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2
               HINTS $ENV{NCCL_ROOT}/lib ${NCCL_ROOT}/lib /usr/local/cuda/lib64)
  find_package(CUDAToolkit QUIET)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND CUDAToolkit_FOUND)
    set(LLAVA_HAVE_NCCL ON)
    add_library(llava_nccl INTERFACE)
    target_include_directories(llava_nccl INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(llava_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
  endif()
endif()

# Every llava target gets the warnings and the configuration macros.
function(llava_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter
                         -Wno-missing-field-initializers)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  # A pip PyTorch ships google/protobuf headers of another version in its include dir;
  # the protobuf we compile and link against must win (-I is searched before -isystem).
  foreach(dir ${Protobuf_INCLUDE_DIRS})
    if(NOT dir STREQUAL "/usr/include")
      target_include_directories(${target} BEFORE PUBLIC ${dir})
    endif()
  endforeach()
  if(LLAVA_HAVE_CUDA)
    target_compile_definitions(${target} PUBLIC LLAVA_HAVE_CUDA=1)
  endif()
  if(LLAVA_HAVE_NCCL)
    target_compile_definitions(${target} PUBLIC LLAVA_HAVE_NCCL=1)
  endif()
endfunction()

function(llava_print_summary)
  message(STATUS "llava-mnist configuration:")
  message(STATUS "  libtorch      ${Torch_VERSION} (${TORCH_INSTALL_PREFIX})")
  message(STATUS "  CUDA (torch)  ${LLAVA_HAVE_CUDA}")
  message(STATUS "  NCCL          ${LLAVA_HAVE_NCCL} ${NCCL_LIBRARY}")
  message(STATUS "  Gloo          ${LLAVA_HAVE_GLOO}")
  message(STATUS "  prometheus-cpp ${prometheus-cpp_VERSION}")
  message(STATUS "  OpenSSL       ${OPENSSL_VERSION}")
  message(STATUS "  abseil        ${absl_VERSION}")
  message(STATUS "  glog          ${glog_VERSION}")
  message(STATUS "  gRPC          ${gRPC_VERSION}")
  message(STATUS "  protobuf      ${Protobuf_VERSION}")
  message(STATUS "  nlohmann_json ${nlohmann_json_VERSION}")
  message(STATUS "  PCRE2         ${PCRE2_VERSION}")
  message(STATUS "  zlib          ${ZLIB_VERSION_STRING}")
  message(STATUS "  libpng        ${PNG_VERSION_STRING}")
  message(STATUS "  GoogleTest    ${GTest_VERSION}")
  message(STATUS "  sanitizers    '${LLAVA_SANITIZE}'")
endfunction()
