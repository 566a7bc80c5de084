#loc2 = loc("-":15:26)
#loc6 = loc("-":19:25)
module {
  func.func public @second(%arg0: tensor<2xf32> loc("-":15:26)) -> tensor<2xf32> {
    %0 = call @self(%arg0) : (tensor<2xf32>) -> tensor<2xf32> loc(#loc3)
    return %0 : tensor<2xf32> loc(#loc4)
  } loc(#loc1)
  func.func private @self(%arg0: tensor<2xf32> loc("-":19:25)) -> tensor<2xf32> {
    %0 = call @self(%arg0) : (tensor<2xf32>) -> tensor<2xf32> loc(#loc7)
    return %0 : tensor<2xf32> loc(#loc8)
  } loc(#loc5)
} loc(#loc)
#loc = loc("-":0:0)
#loc1 = loc("-":15:1)
#loc3 = loc("-":16:8)
#loc4 = loc("-":17:3)
#loc5 = loc("-":19:1)
#loc7 = loc("-":20:8)
#loc8 = loc("-":21:3)
