# Provides MLX and mlx-c to the addon as MLX_QLORA_MLX_LIBS.
#
# 1. An installed mlx-c (find_package(MLXC); MLX's own package is then required too), searched in
#    MLX_C_DIR (CMake or environment variable), CMAKE_PREFIX_PATH, /usr/local and Homebrew.
# 2. Otherwise mlx-c and MLX fetched from upstream at pinned revisions and linked statically, so the
#    .node is self-contained (this is how prebuilds are made). MLX_QLORA_NO_FETCH=ON turns the
#    fetch off and makes a missing mlx-c a configuration error.

set(MLX_QLORA_MLX_VERSION v0.31.2)
# "regenerate bindings for MLX 0.31.2": the first mlx-c revision that builds against 0.31.2 (and has GGUF I/O).
set(MLX_QLORA_MLXC_REVISION fba4470b89073180056c9ea46c443051375f7399)
option(MLX_QLORA_NO_FETCH "Fail instead of fetching MLX and mlx-c when no installed mlx-c is found" OFF)
option(MLX_QLORA_FORCE_FETCH "Fetch and link MLX statically even when mlx-c is installed (prebuilds)" OFF)

set(_mlx_hints "")
if(DEFINED MLX_C_DIR)
  list(APPEND _mlx_hints ${MLX_C_DIR})
endif()
if(DEFINED ENV{MLX_C_DIR})
  list(APPEND _mlx_hints $ENV{MLX_C_DIR})
endif()
list(APPEND _mlx_hints /usr/local /opt/homebrew /opt/homebrew/opt/mlx-c /opt/homebrew/opt/mlx)

if(NOT MLX_QLORA_FORCE_FETCH)
  # mlx-c first, and MLX only when mlx-c is there: an installed MLX found on its own would define
  # an imported `mlx` target that the fetch below then collides with.
  find_package(MLXC CONFIG QUIET HINTS ${_mlx_hints})
  if(MLXC_FOUND)
    find_package(MLX CONFIG QUIET HINTS ${_mlx_hints})
    if(NOT MLX_FOUND)
      message(FATAL_ERROR
        "mlx-qlora: found mlx-c (${MLXC_DIR}) but not the MLX it links against (no MLXConfig.cmake in MLX_DIR, "
        "CMAKE_PREFIX_PATH or ${_mlx_hints}).\n"
        "Install MLX ${MLX_QLORA_MLX_VERSION} into the same prefix as mlx-c, set MLX_DIR to the folder holding its "
        "MLXConfig.cmake, or build with -DMLX_QLORA_FORCE_FETCH=ON to fetch both.")
    endif()
  endif()
endif()

if(MLX_FOUND AND MLXC_FOUND)
  message(STATUS "mlx-qlora: using installed mlx-c (${MLX_C_LIBRARY}) and MLX (${MLX_LIBRARY})")
  # Link both: libmlxc carries no RUNPATH of its own, so libmlx must be a direct dependency too.
  set(MLX_QLORA_MLX_LIBS mlxc mlx)
  set(MLX_QLORA_MLX_RPATH ${MLX_C_LIBRARY_DIRS} ${MLX_LIBRARY_DIRS})
  set(MLX_QLORA_METALLIB "")
elseif(MLX_QLORA_NO_FETCH)
  message(FATAL_ERROR
    "mlx-qlora: no installed mlx-c was found (looked in MLX_C_DIR, CMAKE_PREFIX_PATH, ${_mlx_hints}).\n"
    "Install mlx-c ${MLX_QLORA_MLXC_REVISION} with MLX ${MLX_QLORA_MLX_VERSION} (see README, 'Providing MLX'), "
    "set MLX_C_DIR to its prefix, or allow the build to fetch them (unset MLX_QLORA_NO_FETCH).")
else()
  if(MLX_QLORA_FORCE_FETCH)
    set(_mlx_why "MLX_QLORA_FORCE_FETCH is on")
  else()
    set(_mlx_why "no installed mlx-c found")
  endif()
  message(STATUS "mlx-qlora: ${_mlx_why}; fetching MLX ${MLX_QLORA_MLX_VERSION} and mlx-c ${MLX_QLORA_MLXC_REVISION}")
  include(FetchContent)
  set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
  set(MLX_BUILD_TESTS OFF CACHE BOOL "" FORCE)
  set(MLX_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
  set(MLX_BUILD_BENCHMARKS OFF CACHE BOOL "" FORCE)
  set(MLX_BUILD_PYTHON_BINDINGS OFF CACHE BOOL "" FORCE)
  set(MLX_C_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
  # Declared first so that mlx-c's own FetchContent of MLX resolves to this pin.
  FetchContent_Declare(mlx GIT_REPOSITORY https://github.com/ml-explore/mlx.git GIT_TAG ${MLX_QLORA_MLX_VERSION})
  FetchContent_Declare(mlxc GIT_REPOSITORY https://github.com/ml-explore/mlx-c.git GIT_TAG ${MLX_QLORA_MLXC_REVISION})
  FetchContent_MakeAvailable(mlx mlxc)
  set(MLX_QLORA_MLX_LIBS mlxc mlx)
  set(MLX_QLORA_MLX_RPATH "")
  if(TARGET mlx-metallib)
    set(MLX_QLORA_METALLIB ${mlx_BINARY_DIR}/mlx/backend/metal/kernels/mlx.metallib)
  else()
    set(MLX_QLORA_METALLIB "")
  endif()
endif()

function(mlx_qlora_finish_target target)
  if(MLX_QLORA_MLX_RPATH)
    set_target_properties(${target} PROPERTIES BUILD_RPATH "${MLX_QLORA_MLX_RPATH}" INSTALL_RPATH "${MLX_QLORA_MLX_RPATH}")
  endif()
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # Keep static mlx-c's C symbols out of the addon's export table.
    target_link_options(${target} PRIVATE -Wl,--exclude-libs,ALL)
  endif()
  if(MLX_QLORA_METALLIB)
    # MLX looks for mlx.metallib beside the binary that contains it: with static MLX, the .node.
    add_dependencies(${target} mlx-metallib)
    add_custom_command(TARGET ${target} POST_BUILD
      COMMAND ${CMAKE_COMMAND} -E copy_if_different ${MLX_QLORA_METALLIB} $<TARGET_FILE_DIR:${target}>/mlx.metallib)
  endif()
endfunction()
